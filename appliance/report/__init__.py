"""The compliance report: what the appliance processed in a period, how good it was,
which incidents it had and how fast they were handled, and where the data lives."""
