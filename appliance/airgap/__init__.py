"""The air-gap bundle: build it on a connected host, check and install it offline."""
