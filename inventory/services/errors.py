class GovernanceError(Exception):
    """A refused governance action; the message is shown to the user as it is."""


class NotAllowed(GovernanceError):
    """The user's role does not allow the action."""
