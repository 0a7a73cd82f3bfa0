"""Host-side tools: serial client library and the pumpctl command."""
