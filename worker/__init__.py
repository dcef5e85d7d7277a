"""crmsync: closed-won Salesforce deals become Metronome customers, exactly once."""
