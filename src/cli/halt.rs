//! `schism halt`: the cluster-wide emergency stop (see `operator::halt`).

use crate::operator::halt;

/// Arguments of `schism halt`.
#[derive(clap::Args, Debug)]
pub struct HaltArgs {
    /// Lift the emergency stop: waiting experiments start, new ones run.
    #[arg(long, conflicts_with = "reason")]
    pub lift: bool,
    /// Why, shown in every halted experiment's reasons, conditions and Events.
    #[arg(long, default_value = "halted by an operator")]
    pub reason: String,
    /// The namespace Schism is installed in (where the halt ConfigMap lives).
    #[arg(long, short = 'n', default_value = "schism-system")]
    pub namespace: String,
}

/// Sets or lifts the stop; exit 0 on success, 1 on error.
pub fn run(args: &HaltArgs) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds");
    let outcome = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
        let reason = (!args.lift).then_some(args.reason.as_str());
        halt::set(client, &args.namespace, reason)
            .await
            .map_err(|e| {
                format!(
                    "cannot write {}/{}: {e}",
                    args.namespace,
                    halt::HALT_CONFIGMAP
                )
            })
    });
    match outcome {
        Ok(()) if args.lift => {
            println!("emergency stop lifted: experiments may run again");
            0
        }
        Ok(()) => {
            println!(
                "emergency stop set: running experiments heal and stop, new ones wait until `schism halt --lift`"
            );
            0
        }
        Err(e) => {
            eprintln!("schism halt: {e}");
            1
        }
    }
}
