"""Host-side tools: serial client library and the pumpctl command.

Host tools frame, authenticate and decode with the firmware's own code (`from pump import
...`; the distribution installs firmware/pump as the package `pump`): one implementation of
the protocol and the journal format.
"""
