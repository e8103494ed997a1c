"""Notifications that reach people: the pure rules behind e-mail, chat and webhook delivery.

Nothing here sends anything: the delivery worker, the outbox and the HTTP API call these
modules to decide which rule matches, whom to write to, what to say, how to sign it, which
webhook addresses are safe and when to try again (issue 18).
"""
