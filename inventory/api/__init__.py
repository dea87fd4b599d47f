"""keygov's REST API (/api/): read access to accounts, keys, findings, exceptions, KPIs and key
requests with the pages' filters; filing a key request and marking a migration. The same role
rules as the pages (inventory/roles.py), the same services (inventory/services/)."""
