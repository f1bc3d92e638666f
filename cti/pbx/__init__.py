"""The Asterisk edge: AMI wire, typed events and commands, the AMI link.

Nothing outside this package reads or writes an AMI field name.
"""
