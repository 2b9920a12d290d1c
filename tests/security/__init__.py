"""Reliability and security tests (issue 9): the hostile-input corpus, crossings between
offices, personal data in logs and messages, secrets in the repository and outputs."""
