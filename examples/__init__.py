"""Reference code for the seller's web tier, built on the worker's enqueue API."""
