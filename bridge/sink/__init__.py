"""Sinks: apply planned upserts and deletes to PANDA and translate every HTTP outcome."""
