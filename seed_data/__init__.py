"""Models, enums and database plumbing for the bank-assistant database."""
