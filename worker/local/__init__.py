"""Local stand-ins: the ResolveCustomer emulator, the sandbox (moto server, proxies) and
the demo."""
