# Variables for the static checks in tests/infra (checkov): every optional resource on, so all of them are checked.
project_id = "dermpipe-ci"
create_gke = true
