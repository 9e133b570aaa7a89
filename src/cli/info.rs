//! `mimr info <ckpt> [--json]`: format, architecture and parameter count of a checkpoint.

use super::CkptArgs;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub ckpt: CkptArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let ck = args.ckpt.load()?;
    let c = &ck.config;
    let params = c.param_count();
    if args.json {
        let v = serde_json::json!({
            "file": args.ckpt.checkpoint.display().to_string(),
            "format": ck.format,
            "architecture": c,
            "heads_source": ck.heads_source,
            "parameters": params,
            "image_size": [c.grid[0] * c.patch_size, c.grid[1] * c.patch_size],
            "dropped_keys": ck.dropped,
            "extras": ck.extras,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("file:         {}", args.ckpt.checkpoint.display());
    println!("format:       {}", ck.format.describe());
    println!(
        "block style:  {:?}{}{}",
        c.block_style,
        if c.embed_norm { ", embed_norm" } else { "" },
        if c.final_norm {
            ", final norm"
        } else {
            ", no final norm"
        }
    );
    println!(
        "architecture: patch {}, dim {}, depth {}, heads {} ({}), mlp {}{}",
        c.patch_size,
        c.dim,
        c.depth,
        c.heads,
        ck.heads_source,
        c.mlp_hidden,
        if c.layer_scale { ", LayerScale" } else { "" }
    );
    println!(
        "pos grid:     {}x{} ({}x{} px)",
        c.grid[0],
        c.grid[1],
        c.grid[0] * c.patch_size,
        c.grid[1] * c.patch_size
    );
    println!(
        "pos resize:   {} (other image sizes; --pos-interp overrides)",
        c.pos_interp.name()
    );
    println!("parameters:   {params} ({:.2} M)", params as f64 / 1e6);
    if !ck.dropped.is_empty() {
        println!(
            "dropped:      {} pre-training-only tensors ({})",
            ck.dropped.len(),
            ck.dropped.join(", ")
        );
    }
    for (k, v) in &ck.extras {
        println!("extra:        {k} = {v}");
    }
    Ok(())
}
