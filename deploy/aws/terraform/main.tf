# keygov's roles in one AWS account: the same as ../keygov-roles.yaml (the CloudFormation template
# to deploy organisation-wide as a StackSet). Apply this module once per account, with a provider
# for that account, e.g.
#
#   module "keygov_roles" {
#     source               = "./deploy/aws/terraform"
#     providers            = { aws = aws.workload_account }
#     keygov_principal_arn = "arn:aws:iam::111111111111:role/keygov"
#     external_id          = var.keygov_external_id
#   }
#
# The action lists are exactly those keygov calls (inventory/aws/permissions.py); CI compares
# them with the code (scripts/check_iam_templates.py): keep each list on its own lines.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 4.0"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # The collector (credential report, users, keys) and the on-demand CloudTrail lookup. The
  # credential report and the authorization details support no resource-level permissions.
  read_iam_actions = [
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccountAuthorizationDetails",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
  ]
  read_cloudtrail_actions = [
    "cloudtrail:LookupEvents",
  ]

  # Creating an approved key; DeleteAccessKey only undoes a key whose secret could not be stored.
  write_iam_actions = [
    "iam:CreateAccessKey",
    "iam:DeleteAccessKey",
  ]
  # CreateSecret with tags also needs TagResource.
  write_secret_actions = [
    "secretsmanager:CreateSecret",
    "secretsmanager:TagResource",
  ]

  # Only keygov's principal, and only with the ExternalId.
  trust_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "KeygovOnlyWithExternalId"
      Effect    = "Allow"
      Principal = { AWS = var.keygov_principal_arn }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = var.external_id } }
    }]
  })
}

resource "aws_iam_role" "read" {
  name                 = var.read_role_name
  description          = "keygov reads IAM users and access keys (and CloudTrail events on demand)"
  max_session_duration = 3600
  assume_role_policy   = local.trust_policy
}

resource "aws_iam_role_policy" "read" {
  name = "keygov-read"
  role = aws_iam_role.read.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "KeygovReadIamKeys"
        Effect   = "Allow"
        Action   = local.read_iam_actions
        Resource = "*"
      },
      {
        Sid      = "KeygovWhereIsTheKeyUsed"
        Effect   = "Allow"
        Action   = local.read_cloudtrail_actions
        Resource = "*"
      },
    ]
  })
}

resource "aws_iam_role" "write" {
  count                = var.create_write_role ? 1 : 0
  name                 = var.write_role_name
  description          = "keygov creates approved access keys and stores their secrets in Secrets Manager"
  max_session_duration = 3600
  assume_role_policy   = local.trust_policy
}

resource "aws_iam_role_policy" "write" {
  count = var.create_write_role ? 1 : 0
  name  = "keygov-write"
  role  = aws_iam_role.write[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "KeygovWriteAccessKeys"
        Effect   = "Allow"
        Action   = local.write_iam_actions
        Resource = "arn:${local.partition}:iam::${local.account_id}:user${var.write_user_path}*"
      },
      {
        # The secrets use the account's aws/secretsmanager key: a customer managed KMS key
        # would also need kms:GenerateDataKey on that key.
        Sid      = "KeygovWriteSecrets"
        Effect   = "Allow"
        Action   = local.write_secret_actions
        Resource = "arn:${local.partition}:secretsmanager:*:${local.account_id}:secret:${var.secret_name_prefix}*"
      },
    ]
  })
}
