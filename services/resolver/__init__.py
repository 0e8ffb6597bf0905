"""The resolver service: Teams knowledge and conversation context."""
