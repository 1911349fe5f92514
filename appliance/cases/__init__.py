"""Cases: one GenAI incident per case, opened by a detector or a person, collecting
evidence, RCA results and its resolution; every action is an audit entry."""
