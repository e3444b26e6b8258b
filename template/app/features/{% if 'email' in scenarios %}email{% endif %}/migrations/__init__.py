"""The email scenario's schema revisions (the `users` table): the branch labelled `email`."""
