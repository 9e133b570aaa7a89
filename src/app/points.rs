//! The map's points drawn by the GPU: an egui-wgpu paint callback that draws every point as one
//! instanced quad with shaders/map_points.wgsl (egui_plot's tessellated circles: ~4 fps at 10k).

use eframe::egui::{self, Color32, Rect};
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, wgpu};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes per point in the instance buffer: x, y as f32, then RGBA8.
const STRIDE: u64 = 12;
const UNIFORM_BYTES: u64 = 32;

/// Identifies every cloud made in this process: the renderer, shared by all runs' maps,
/// re-uploads whenever the cloud it is given is not the one on the GPU.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Points ready for the GPU: positions and colours packed as the instance buffer wants them.
pub struct PointCloud {
    bytes: Vec<u8>,
    len: u32,
    /// Unique per cloud (the renderer re-uploads when it changes).
    pub key: u64,
}

impl PointCloud {
    /// Packs `(x, y, colour)` triples (colours premultiplied, as `Color32` is).
    pub fn new(points: impl Iterator<Item = ([f32; 2], Color32)>) -> Self {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        let mut len = 0u32;
        for (xy, c) in points {
            bytes.extend(xy[0].to_le_bytes());
            bytes.extend(xy[1].to_le_bytes());
            bytes.extend(c.to_array());
            len += 1;
        }
        Self { bytes, len, key }
    }
}

/// The pipeline and buffers, created once per window (eframe's wgpu render state).
pub struct PointsRenderer {
    pipeline: wgpu::RenderPipeline,
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    instances: Option<wgpu::Buffer>,
    uploaded: Option<(u64, u32)>,
}

/// Registers the renderer with eframe's wgpu state (call once at start-up).
pub fn install(rs: &egui_wgpu::RenderState) {
    let renderer = PointsRenderer::new(&rs.device, rs.target_format);
    rs.renderer.write().callback_resources.insert(renderer);
}

impl PointsRenderer {
    fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("map points"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/map_points.wgsl").into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("map points"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: wgpu::BufferSize::new(UNIFORM_BYTES),
                },
                count: None,
            }],
        });
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("map points uniforms"),
            size: UNIFORM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("map points"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            }],
        });
        let pipeline = pipeline(device, &shader, &layout, format);
        Self {
            pipeline,
            uniform,
            bind_group,
            instances: None,
            uploaded: None,
        }
    }

    /// Uploads `cloud` unless it is the one already on the GPU.
    fn upload(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, cloud: &PointCloud) {
        if self.uploaded == Some((cloud.key, cloud.len)) {
            return;
        }
        let need = (cloud.bytes.len() as u64).max(STRIDE);
        if self.instances.as_ref().is_none_or(|b| b.size() < need) {
            self.instances = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("map points instances"),
                size: need.next_power_of_two(),
                usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        if let Some(b) = &self.instances {
            queue.write_buffer(b, 0, &cloud.bytes);
        }
        self.uploaded = Some((cloud.key, cloud.len));
    }
}

fn pipeline(
    device: &wgpu::Device,
    shader: &wgpu::ShaderModule,
    layout: &wgpu::BindGroupLayout,
    format: wgpu::TextureFormat,
) -> wgpu::RenderPipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("map points"),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let attributes = wgpu::vertex_attr_array![0 => Float32x2, 1 => Unorm8x4];
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("map points"),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState {
            module: shader,
            entry_point: Some("vs_main"),
            compilation_options: Default::default(),
            buffers: &[Some(wgpu::VertexBufferLayout {
                array_stride: STRIDE,
                step_mode: wgpu::VertexStepMode::Instance,
                attributes: &attributes,
            })],
        },
        fragment: Some(wgpu::FragmentState {
            module: shader,
            entry_point: Some("fs_main"),
            compilation_options: Default::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format,
                blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        primitive: wgpu::PrimitiveState {
            topology: wgpu::PrimitiveTopology::TriangleStrip,
            ..Default::default()
        },
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        multiview_mask: None,
        cache: None,
    })
}

/// One frame's draw: the cloud, the plot bounds shown in `rect`, and the dot radius.
pub struct PointsCallback {
    pub cloud: Arc<PointCloud>,
    /// Plot bounds shown: min x, min y, max x, max y.
    pub bounds: [f64; 4],
    /// Screen rectangle (points) the bounds fill.
    pub rect: Rect,
    /// Dot radius in points.
    pub radius: f32,
}

impl PointsCallback {
    /// The paint callback for egui's painter.
    pub fn shape(self) -> egui::Shape {
        let rect = self.rect;
        egui::Shape::Callback(egui_wgpu::Callback::new_paint_callback(rect, self))
    }

    fn uniforms(&self) -> Vec<u8> {
        let [x0, y0, x1, y1] = self.bounds;
        let (sx, sy) = (2.0 / (x1 - x0).max(1e-30), 2.0 / (y1 - y0).max(1e-30));
        let (w, h) = (self.rect.width().max(1.0), self.rect.height().max(1.0));
        let values = [
            sx as f32,
            sy as f32,
            (-1.0 - x0 * sx) as f32,
            (-1.0 - y0 * sy) as f32,
            2.0 * self.radius / w,
            2.0 * self.radius / h,
            (1.0 / self.radius.max(0.5)).min(1.0),
            0.0,
        ];
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

impl CallbackTrait for PointsCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(r) = resources.get_mut::<PointsRenderer>() {
            r.upload(device, queue, &self.cloud);
            queue.write_buffer(&r.uniform, 0, &self.uniforms());
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        let Some(r) = resources.get::<PointsRenderer>() else {
            return;
        };
        let (Some(buffer), Some((_, len))) = (&r.instances, r.uploaded) else {
            return;
        };
        pass.set_pipeline(&r.pipeline);
        pass.set_bind_group(0, &r.bind_group, &[]);
        pass.set_vertex_buffer(0, buffer.slice(..));
        pass.draw(0..4, 0..len);
    }
}
