"""The AWS wire layer: client construction and the SQS helpers the worker and the
operator tools share."""
