"""The knowledge base's seed playbooks, shipped as package data of ``appliance.kb_seed``
(see setup.py); this file only makes the folder importable by that name, which an
editable install needs. Code finds the playbooks through appliance/resources.py."""
