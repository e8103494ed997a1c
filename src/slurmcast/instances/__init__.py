"""What instances sharing a broker agree on: who polls (lease), who is there (presence)."""
