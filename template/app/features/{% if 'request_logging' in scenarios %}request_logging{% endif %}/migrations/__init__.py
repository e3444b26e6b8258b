"""The request_logging scenario's schema revisions: the branch labelled `request_logging`."""
