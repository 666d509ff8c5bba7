// Torch binding of the WKV6 kernels in wkv6.cu: checks shapes/dtypes/devices, allocates outputs, launches.
// Autograd, the device guard and the stream (passed in as the integer handle of torch.cuda.current_stream())
// live in rwkv_core/cuda_wkv.py. Only torch/extension.h and the CUDA runtime header are included, so this file
// also compiles (g++ -std=c++20 -fsyntax-only) against a CPU build of torch; c10/cuda headers need a CUDA build.
#include <torch/extension.h>
#include <cuda_runtime_api.h>

cudaError_t wkv6_forward(bool bf16, int B, int T, int H, const void* r, const void* k, const void* v,
                         const float* w, const float* u, const float* s0, void* y, float* sT, cudaStream_t stream);
cudaError_t wkv6_backward(bool bf16, int B, int T, int H, const void* r, const void* k, const void* v,
                          const float* w, const float* u, const float* s0, const void* gy, const float* gsT,
                          void* gr, void* gk, void* gv, float* gw, float* gu_part, float* gs0, float* a_last,
                          cudaStream_t stream);
int wkv6_head_size();

namespace {

// r, k, v: (B, T, H, N) float or bfloat16, one dtype; w: same shape fp32; u: (H, N) fp32.
void check_inputs(const torch::Tensor& r, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& w,
                  const torch::Tensor& u) {
  TORCH_CHECK(r.dim() == 4, "wkv6: r must be (B, T, H, N), got ", r.sizes());
  TORCH_CHECK(r.size(3) == wkv6_head_size(), "wkv6: head size must be ", wkv6_head_size(), ", got ", r.size(3));
  TORCH_CHECK(r.scalar_type() == torch::kFloat32 || r.scalar_type() == torch::kBFloat16,
              "wkv6: r/k/v must be float32 or bfloat16, got ", r.scalar_type());
  for (const auto* t : {&k, &v}) {
    TORCH_CHECK(t->sizes() == r.sizes(), "wkv6: k/v shape ", t->sizes(), " != r shape ", r.sizes());
    TORCH_CHECK(t->scalar_type() == r.scalar_type(), "wkv6: r/k/v dtypes differ");
  }
  TORCH_CHECK(w.sizes() == r.sizes() && w.scalar_type() == torch::kFloat32, "wkv6: w must be fp32 of r's shape");
  TORCH_CHECK(u.dim() == 2 && u.size(0) == r.size(2) && u.size(1) == r.size(3) && u.scalar_type() == torch::kFloat32,
              "wkv6: u must be fp32 (H, N)");
  for (const auto* t : {&r, &k, &v, &w, &u}) {
    TORCH_CHECK(t->is_cuda() && t->is_contiguous(), "wkv6: inputs must be contiguous CUDA tensors");
    TORCH_CHECK(t->device() == r.device(), "wkv6: inputs on different devices");
  }
}

void check_cuda(cudaError_t err) { TORCH_CHECK(err == cudaSuccess, "wkv6: CUDA error: ", cudaGetErrorString(err)); }

// An optional (B, H, N, N) fp32 state; returns its data pointer or null.
const float* state_ptr(const c10::optional<torch::Tensor>& s, const torch::Tensor& r, const char* what) {
  if (!s.has_value()) return nullptr;
  const auto n = r.size(3);
  TORCH_CHECK(s->sizes() == torch::IntArrayRef({r.size(0), r.size(2), n, n}) && s->scalar_type() == torch::kFloat32 &&
                  s->is_contiguous() && s->device() == r.device(),
              "wkv6: ", what, " must be a contiguous fp32 (B, H, N, N) tensor on r's device");
  return s->data_ptr<float>();
}

// -> (y like r, final state fp32 (B, H, N, N))
std::vector<torch::Tensor> forward(torch::Tensor r, torch::Tensor k, torch::Tensor v, torch::Tensor w,
                                   torch::Tensor u, c10::optional<torch::Tensor> s0, int64_t stream) {
  check_inputs(r, k, v, w, u);
  const int B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
  auto y = torch::empty_like(r);
  auto sT = torch::empty({B, H, N, N}, r.options().dtype(torch::kFloat32));
  check_cuda(wkv6_forward(r.scalar_type() == torch::kBFloat16, B, T, H, r.data_ptr(), k.data_ptr(),
             v.data_ptr(), w.data_ptr<float>(), u.data_ptr<float>(), state_ptr(s0, r, "state"),
             y.data_ptr(), sT.data_ptr<float>(), reinterpret_cast<cudaStream_t>(stream)));
  return {y, sT};
}

// gy like r; gsT optional fp32 (B, H, N, N).
// -> (gr, gk, gv like r; gw fp32 like w; gu fp32 (B, H, N) per batch element; gs0 fp32 (B, H, N, N))
std::vector<torch::Tensor> backward(torch::Tensor r, torch::Tensor k, torch::Tensor v, torch::Tensor w,
                                    torch::Tensor u, c10::optional<torch::Tensor> s0, torch::Tensor gy,
                                    c10::optional<torch::Tensor> gsT, int64_t stream) {
  check_inputs(r, k, v, w, u);
  TORCH_CHECK(gy.sizes() == r.sizes() && gy.scalar_type() == r.scalar_type() && gy.is_contiguous() &&
                  gy.device() == r.device(),
              "wkv6: gy must be contiguous, of r's shape, dtype and device");
  const int B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
  auto f32 = r.options().dtype(torch::kFloat32);
  auto gr = torch::empty_like(r), gk = torch::empty_like(r), gv = torch::empty_like(r);
  auto gw = torch::empty_like(w);
  auto gu = torch::empty({B, H, N}, f32);
  auto gs0 = torch::empty({B, H, N, N}, f32);
  auto a_last = torch::empty({B, H, N}, f32);
  check_cuda(wkv6_backward(r.scalar_type() == torch::kBFloat16, B, T, H, r.data_ptr(), k.data_ptr(),
             v.data_ptr(), w.data_ptr<float>(), u.data_ptr<float>(), state_ptr(s0, r, "state"),
             gy.data_ptr(), state_ptr(gsT, r, "final-state gradient"), gr.data_ptr(),
             gk.data_ptr(), gv.data_ptr(), gw.data_ptr<float>(), gu.data_ptr<float>(),
             gs0.data_ptr<float>(), a_last.data_ptr<float>(), reinterpret_cast<cudaStream_t>(stream)));
  return {gr, gk, gv, gw, gu, gs0};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "WKV6 forward with initial state -> (y, final state)");
  m.def("backward", &backward, "WKV6 backward -> (gr, gk, gv, gw, gu per batch, g initial state)");
}
