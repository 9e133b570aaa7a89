// The embedding map's points: one instanced quad per point (4-vertex triangle strip), shaded as a
// round, anti-aliased dot. Vertex buffers and one uniform only (no storage buffers): WebGL2-ready.

struct Uniforms {
    // plot coordinates -> normalised device coordinates: ndc = xy * scale + offset
    scale: vec2<f32>,
    offset: vec2<f32>,
    // the dot's radius in NDC along x and y
    radius: vec2<f32>,
    // width of the soft edge as a fraction of the radius
    feather: f32,
    _pad: f32,
};

@group(0) @binding(0) var<uniform> u: Uniforms;

struct VsOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) color: vec4<f32>,
    // position inside the quad, -1..1 on both axes
    @location(1) local: vec2<f32>,
};

@vertex
fn vs_main(
    @builtin(vertex_index) vi: u32,
    @location(0) xy: vec2<f32>,
    @location(1) color: vec4<f32>,
) -> VsOut {
    let corner = vec2<f32>(f32(vi & 1u), f32((vi >> 1u) & 1u)) * 2.0 - 1.0;
    var out: VsOut;
    out.pos = vec4<f32>(xy * u.scale + u.offset + corner * u.radius, 0.0, 1.0);
    out.color = color;
    out.local = corner;
    return out;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let coverage = clamp((1.0 - length(in.local)) / u.feather, 0.0, 1.0);
    if (coverage <= 0.0) {
        discard;
    }
    // the colours arrive premultiplied (egui's Color32) and egui blends premultiplied
    return in.color * coverage;
}
