"""What the template's tests share beyond conftest: parsers, launchers and their fixtures."""
