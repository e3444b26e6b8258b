"""The webhooks scenario's schema revisions (endpoints, deliveries): the branch labelled `webhooks`."""
