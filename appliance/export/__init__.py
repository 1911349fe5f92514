"""One-click case exports (a signed zip of evidence) and the human reports (PDF, HTML)
that exports and the compliance report share."""
