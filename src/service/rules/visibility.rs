//! Which keys a caller may see. Anything else is answered exactly like a key that does not
//! exist ("Not found or unauthorized"), and nothing is ever visible across organizations.

use keyledger_projections::directory::Organization;
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{ApiKeyKind, Permission};

use super::caller::{Caller, Identity};

pub fn can_see(caller: &Caller, org: &Organization, key: &ApiKey) -> bool {
    if key.organization_id != caller.organization_id || org.id != caller.organization_id {
        return false;
    }
    if key.id == caller.api_key_id || caller.is_organization_admin(org) {
        return true;
    }
    match &caller.identity {
        Identity::User { user_id, .. } => {
            caller.has_permission(org, Permission::Read)
                && match key.kind {
                    ApiKeyKind::Personal => key.user_id == Some(*user_id),
                    ApiKeyKind::Team => key.group_id.is_some_and(|team| caller.administers_team(org, team)),
                    ApiKeyKind::Organization => false,
                }
        }
        Identity::ServiceAccount { kind: ApiKeyKind::Team, group_id, .. } => {
            key.kind == ApiKeyKind::Team && key.group_id.is_some() && key.group_id == *group_id
        }
        Identity::ServiceAccount { .. } => false,
    }
}
