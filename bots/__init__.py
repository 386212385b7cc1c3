"""The proactive side: ingest of new records (ingest, load, decide), the outbox dispatcher and senders."""
