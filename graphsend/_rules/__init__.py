"""Rules: what a request may hold, how an answer becomes a Receipt or an exception, when to retry.

Nothing here sends anything; the drivers (``graphsend._drivers``) apply these rules.
"""
