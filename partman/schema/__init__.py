"""The JSON Schemas (the .json files, for editors and for error reports) and validators generated from them.

The generated modules are fastjsonschema code: they answer "is this valid?" without importing jsonschema,
which is then imported only to report every error of an invalid file. `python -m partman.schema.generate`
writes them; a test fails if they fall behind the .json files."""
