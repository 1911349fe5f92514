"""The component templates, shipped as package data of ``appliance.bundled`` (see
setup.py); this file only makes the folder importable by that name, which an
editable install needs. Code finds the templates through appliance/resources.py."""
