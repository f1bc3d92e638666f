"""cti: a contact-center server for Asterisk.

The package is organised by feature: `pbx` owns the Asterisk edge (AMI wire,
typed events and commands), `calls` the pure call tracker, and the shells
(`cli`, `replay`) wire them together.
"""

__version__ = "0.1.0"
