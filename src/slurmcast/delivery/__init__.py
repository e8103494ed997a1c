"""Notification delivery (issue 18): the rules in force, planning deliveries from a poll's
events, and the worker that sends what the outbox holds.

``planner.DeliveryPlanner`` runs inside the polling leader's steps (only the leader plans, so
one instance writes each delivery); ``worker.DeliveryWorker`` runs on every instance and
claims due deliveries from the shared outbox, so any instance may send, and each delivery is
sent by the one that claimed it.
"""
