"""Everything that talks to AWS. boto3 only: no ORM here; functions return dataclasses."""
