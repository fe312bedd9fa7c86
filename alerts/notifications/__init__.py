"""Notifications: who is told what about incidents, and the proof they were.

planner   turns incident events (and time, for reminders) into Notification rows
grouping  gathers the changes of one host's incidents into one message per channel
delivery  sends one row once: claim, send through its transport, record the attempt
transports one small class per kind of channel, in a registry
messages  the words: subject, text and the webhook's JSON for each occasion
panel     what the dashboard shows
"""
