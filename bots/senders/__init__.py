"""One sender per channel, each turning a platform's answer into an Outcome."""
from bots.senders.result import DELIVERED, PERMANENT, TRANSIENT, Notification, Outcome, Sender

__all__ = ["DELIVERED", "PERMANENT", "TRANSIENT", "Notification", "Outcome", "Sender"]
