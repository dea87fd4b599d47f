output "read_role_arn" {
  description = "keygov's read role in this account (Account.role_arn)"
  value       = aws_iam_role.read.arn
}

output "write_role_arn" {
  description = "keygov's write role in this account (Account.write_role_arn), or null"
  value       = var.create_write_role ? aws_iam_role.write[0].arn : null
}
