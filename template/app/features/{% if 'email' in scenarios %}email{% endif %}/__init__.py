"""Sign-up with a welcome email (HTML + plain text) sent over real SMTP as a background job."""
