"""CRM: the Kommo API client, the ledger that makes its calls exactly-once, webhook events."""
