//! The workload's credentials in a cluster: a key of a Secret in the Chaos's namespace, read
//! by the runner when its run starts. The password stays in the runner's memory; errors name
//! the Secret and the key, never the value.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::api::{ChaosSpec, SecretKeyRef};
use crate::workload::postgres::Password;

/// The Secret key the spec names for the postgres client's password, if any.
pub fn password_ref(spec: &ChaosSpec) -> Option<&SecretKeyRef> {
    spec.workload
        .as_ref()?
        .postgres
        .as_ref()?
        .password
        .as_ref()?
        .secret_key_ref
        .as_ref()
}

/// Reads the password `reference` names, in `namespace`.
pub async fn read_password(
    client: &Client,
    namespace: &str,
    reference: &SecretKeyRef,
) -> Result<Password, String> {
    let field = "spec.workload.postgres.password.secretKeyRef";
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(format!(
                "{field}: Secret {namespace}/{} does not exist",
                reference.name
            ));
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(format!(
                "{field}: the runner may not read Secret {namespace}/{} ({}); grant it with the chart's runner.secrets",
                reference.name, e.message
            ));
        }
        Err(e) => {
            return Err(format!(
                "{field}: cannot read Secret {namespace}/{}: {e}",
                reference.name
            ));
        }
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .map(|b| b.0.clone())
        .ok_or_else(|| {
            format!(
                "{field}.key: Secret {namespace}/{} has no key {:?}",
                reference.name, reference.key
            )
        })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!(
            "{field}.key: the value of {:?} in Secret {namespace}/{} is not UTF-8 text",
            reference.key, reference.name
        )
    })?;
    Ok(Password::new(text))
}
