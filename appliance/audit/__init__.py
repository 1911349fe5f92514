"""The audit log: an append-only, hash-chained record of every case action, RCA run,
export, key change and console login, with Ed25519-signed chain heads."""
