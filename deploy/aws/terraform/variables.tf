variable "keygov_principal_arn" {
  description = "ARN of the identity keygov runs as (its instance or task role), e.g. arn:aws:iam::111111111111:role/keygov. It must exist first."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role/|user/|root$)", var.keygov_principal_arn))
    error_message = "keygov_principal_arn must be an IAM role or user ARN."
  }
}

variable "external_id" {
  description = "The ExternalId keygov presents when it assumes a role (the accounts' ExternalId in keygov)."
  type        = string
  sensitive   = true
  validation {
    # Lengths apart: Terraform's regular expressions (RE2) repeat at most 1,000 times.
    condition     = length(var.external_id) >= 2 && length(var.external_id) <= 1224 && can(regex("^[\\w+=,.@:/-]+$", var.external_id))
    error_message = "external_id must be 2 to 1224 of letters, digits and +=,.@:/-"
  }
}

variable "read_role_name" {
  description = "Name of the read role (manage.py import_accounts --role-name)."
  type        = string
  default     = "KeygovRead"
}

variable "create_write_role" {
  description = "Also create the write role, so that keygov creates approved keys itself."
  type        = bool
  default     = false
}

variable "write_role_name" {
  description = "Name of the write role (the accounts' write role ARN in keygov)."
  type        = string
  default     = "KeygovWrite"
}

variable "write_user_path" {
  description = "IAM path of the users whose keys the write role may create and delete, e.g. /apps/; / allows every user."
  type        = string
  default     = "/"
  validation {
    condition     = can(regex("^/([\\x21-\\x7E]*/)?$", var.write_user_path))
    error_message = "write_user_path must start and end with /, e.g. /apps/."
  }
}

variable "secret_name_prefix" {
  description = "Secrets Manager names the write role may create, by prefix: the start of KEYGOV_SECRET_NAME_TEMPLATE."
  type        = string
  default     = "keygov/"
}
