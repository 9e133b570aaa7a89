//! `mimr export <ckpt> --out enc.safetensors`: the encoder in timm/hub key names, loadable by
//! `timm`/`torch` (`pos_embed` with a zero CLS row; `num_heads` and layout in the metadata).

use super::CkptArgs;
use crate::checkpoint;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub ckpt: CkptArgs,
    /// Output .safetensors file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let ck = args.ckpt.load()?;
    checkpoint::export_timm(&ck, &args.out)?;
    println!(
        "wrote {} ({} tensors)",
        args.out.display(),
        ck.tensors.len()
    );
    Ok(())
}
