"""Consumers of the predictions topic: the deduplicating sink and the live tail."""
