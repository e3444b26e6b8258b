"""Tests of the email scenario: sign-up and the welcome email over real SMTP."""
