"""Your own endpoints: the template creates this package once and never changes it again."""
