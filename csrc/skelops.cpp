// The one registration place: every skelops operator schema, and the Python module skelops._C.
//
// Backward passes are operators of their own (graph_conv_backward), with device kernels like
// the forward ones; autograd, fake kernels and autocast are registered from Python
// (skelops/ops/).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <skelops/build_config.h>
#include <torch/library.h>

#include <string>
#include <vector>

TORCH_LIBRARY(skelops, m) {
  // x [N, C_in, T, V], weight [K, C_out, C_in], adjacency [K, V, V] or [N, K, V, V] (A[k, v, w]
  // carries source joint v to target joint w), bias [C_out] or [K, C_out] -> [N, C_out, T, V].
  m.def("graph_conv(Tensor x, Tensor weight, Tensor adjacency, Tensor? bias=None) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // Gradients (x, weight, adjacency, bias) for output_mask; a masked-out one is an empty tensor.
  m.def(
      "graph_conv_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor adjacency, "
      "Tensor? bias, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Sparse graph convolution: the same function as graph_conv for the adjacency whose subsets
  // are stored as CSR with rows indexed by the TARGET joint w (skelops.graphs.SparseAdjacency):
  // crow_indices [K, V + 1] (global offsets into col_indices/values, crow[0, 0] = 0,
  // crow[k, V] = crow[k + 1, 0], crow[K - 1, V] = nnz), col_indices [nnz] (source joints v,
  // strictly increasing within a row), values [nnz] (A[k, v, w], x's dtype); indices int32 or
  // int64. bias [C_out] or [K, C_out] (before aggregation: scaled by the row sums).
  m.def(
      "sparse_graph_conv(Tensor x, Tensor weight, Tensor crow_indices, Tensor col_indices, "
      "Tensor values, Tensor? bias=None) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Gradients (x, weight, values, bias) for output_mask; a masked-out one is an empty tensor.
  m.def(
      "sparse_graph_conv_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor crow_indices, "
      "Tensor col_indices, Tensor values, Tensor? bias, bool[4] output_mask) -> "
      "(Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Multi-dilation graph convolution (STC-Net's DK-GC): one channel mix W [K, C_out, C_in]
  // shared by D dilated kernels adjacency [D, K, V, V]; the branches summed (concat = false,
  // -> [N, C_out, T, V]) or concatenated dilation-major along channels (-> [N, D * C_out, T, V]).
  // bias: one value per output channel, added after aggregation.
  m.def(
      "multi_dilation_graph_conv(Tensor x, Tensor weight, Tensor adjacency, Tensor? bias=None, "
      "bool concat=False) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Gradients (x, weight, adjacency, bias) for output_mask; a masked-out one is an empty tensor.
  m.def(
      "multi_dilation_graph_conv_backward(Tensor grad_out, Tensor x, Tensor weight, "
      "Tensor adjacency, Tensor? bias, bool concat, bool[4] output_mask) -> "
      "(Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Spatio-temporal curves (STC-Net's STC module): x [N, C, T, V] aggregated along greedy
  // curves scored by key [N, D, T, V]; candidates [V, V] bool or None (all joints).
  // Returns y [N, C, T, V] (x's dtype) and, for the backward, per transition (n, t, v) with
  // t < T - 1: next joint [N, T - 1, V] int32, log-probability of that step and the row's
  // log-sum-exp of the scaled scores [N, T - 1, V] float32 (float64 for float64 inputs).
  m.def(
      "spatio_temporal_curve(Tensor x, Tensor key, Tensor? candidates, int length, float scale) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Gradients (x, key) for output_mask; a masked-out one is an empty tensor.
  m.def(
      "spatio_temporal_curve_backward(Tensor grad_out, Tensor x, Tensor key, Tensor? candidates, "
      "Tensor next_joint, Tensor log_prob, Tensor log_normalizer, int length, float scale, "
      "bool[2] output_mask) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Partitioned self-attention (SkateFormer's Skate-MSA): q, k, v [B, H, T, V, D] attend within
  // every (frame window x joint group) partition given by frame_partition [P, W] and
  // joint_partition [G, J] (index tensors, permutations of range(T) / range(V)); bias none,
  // [2W - 1, H] or [2W - 1, J, J, H] (relative-position table); dropout on the probabilities
  // by a counter-based hash of seed (partition_attention_math.h). Returns out (q's shape, in
  // q's memory layout) and the per-query log-sum-exp of the scores lse [B, H, T, V] (float32;
  // float64 for float64 inputs), which the backward reuses.
  m.def(
      "partition_attention(Tensor q, Tensor k, Tensor v, Tensor joint_partition, "
      "Tensor frame_partition, Tensor? bias, float scale, float dropout_p, int seed) "
      "-> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Gradients (q, k, v, bias) for output_mask; a masked-out one (or the absent bias's) is an
  // empty tensor.
  m.def(
      "partition_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, "
      "Tensor lse, Tensor joint_partition, Tensor frame_partition, Tensor? bias, float scale, "
      "float dropout_p, int seed, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Pose heatmaps (PoseC3D's pseudo heatmaps, pyskl GeneratePoseTarget semantics): keypoints
  // [N, T, M, V, 2] in pixel coordinates, scores [N, T, M, V], limbs [L, 2] (limb maps) or none
  // (keypoint maps) -> [N, V or L, T, H, W] in dtype (keypoints' when none), contiguous or
  // channels_last_3d; persons combined by the maximum. pyskl_window: pyskl's 3-sigma windows.
  m.def(
      "render_heatmaps(Tensor keypoints, Tensor scores, Tensor? limbs, SymInt height, "
      "SymInt width, float sigma, bool pyskl_window, bool channels_last, ScalarType? dtype) "
      "-> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Gradients (keypoints, scores) for output_mask; a masked-out one is an empty tensor.
  m.def(
      "render_heatmaps_backward(Tensor grad, Tensor keypoints, Tensor scores, Tensor? limbs, "
      "float sigma, bool pyskl_window, bool[2] output_mask) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Forward kinematics along a kinematic tree: local_rotations [N, J, 3, 3] (joint j's rotation
  // relative to its parent), rest_joints [J, 3] or [N, J, 3] (joint positions in the rest pose),
  // parents [J] (parents[j] < j, -1 for a root). Returns global_rotations [N, J, 3, 3]
  // (G_j = G_parent @ L_j), posed_joints [N, J, 3] (p_j = G_parent @ (r_j - r_parent) +
  // p_parent; a root's p_j = r_j) and global_translations [N, J, 3] (t_j = p_j - G_j @ r_j: the
  // rest-to-posed rigid transform x -> G_j x + t_j that skinning applies).
  m.def(
      "forward_kinematics(Tensor local_rotations, Tensor rest_joints, int[] parents) "
      "-> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Gradients (local_rotations, rest_joints) for output_mask from the gradients of the three
  // outputs (an absent one is zero); global_rotations is the forward's first output.
  m.def(
      "forward_kinematics_backward(Tensor? grad_global_rotations, Tensor? grad_posed_joints, "
      "Tensor? grad_global_translations, Tensor local_rotations, Tensor rest_joints, "
      "int[] parents, Tensor global_rotations, bool[2] output_mask) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Linear blend skinning: vertices [N or 1, P, 3], weights [P, J] dense (weight_indices none)
  // or [P, K] with weight_indices [P, K] (int32/int64 joint indices in [0, J)), rotations
  // [N, J, 3, 3], translations [N, J, 3] -> out [N, P, 3],
  // out[n, p] = sum_j w[p, j] (R[n, j] @ v[n or 0, p] + t[n, j]); no per-vertex matrix stored.
  m.def(
      "linear_blend_skinning(Tensor vertices, Tensor weights, Tensor? weight_indices, "
      "Tensor rotations, Tensor translations) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Gradients (vertices, weights, rotations, translations) for output_mask; a masked-out one is
  // an empty tensor.
  m.def(
      "linear_blend_skinning_backward(Tensor grad_out, Tensor vertices, Tensor weights, "
      "Tensor? weight_indices, Tensor rotations, Tensor translations, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Rodrigues' formula: axis_angle [B, 3] (direction = axis, norm = angle) -> [B, 3, 3].
  m.def("axis_angle_to_matrix(Tensor axis_angle) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("axis_angle_to_matrix_backward(Tensor grad, Tensor axis_angle) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // Joint rotations from single-axis degrees of freedom (SKEL's biomechanical joints): pose
  // [N, D] angles, axes [D, 3] fixed unit axes, dof_joints [D] non-decreasing joint index of each
  // DoF -> local rotations [N, num_joints, 3, 3]; joint j with DoFs d_1 < ... < d_k gets
  // R(a_dk, q_dk) @ ... @ R(a_d1, q_d1) (a later DoF applied on the left, as SKEL's
  // CustomJoint), a joint without DoFs the identity.
  m.def("dof_rotations(Tensor pose, Tensor axes, int[] dof_joints, int num_joints) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // Gradients (pose, axes) for output_mask; a masked-out one is an empty tensor.
  m.def(
      "dof_rotations_backward(Tensor grad, Tensor pose, Tensor axes, int[] dof_joints, "
      "int num_joints, bool[2] output_mask) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Camera projection: points [N, P, 3], camera [N, 4] pinhole (fx, fy, cx, cy) or [N, 3] weak
  // perspective (s, tx, ty), optional extrinsics rotation [N, 3, 3] and translation [N, 3]
  // (X_c = R X + t) -> [N, P, 2]. Pinhole: (fx x_c / z + cx, fy y_c / z + cy) with
  // z = max(z_c, min_depth); weak perspective (HMR's): s (x_c + tx, y_c + ty).
  m.def(
      "project_points(Tensor points, Tensor camera, Tensor? rotation, Tensor? translation, "
      "bool weak_perspective, float min_depth) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Gradients (points, camera, rotation, translation) for output_mask; a masked-out or absent
  // one is an empty tensor.
  m.def(
      "project_points_backward(Tensor grad, Tensor points, Tensor camera, Tensor? rotation, "
      "Tensor? translation, bool weak_perspective, float min_depth, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

namespace {

[[maybe_unused]] std::vector<std::string> split_archs(const std::string& archs) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= archs.size()) {
    const size_t end = archs.find(',', start);
    const std::string item = archs.substr(start, end == std::string::npos ? end : end - start);
    if (!item.empty()) out.push_back("sm_" + item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "skelops compiled kernels; the operators live in torch.ops.skelops";
  m.def("build_info", [] {
    pybind11::dict info;
    info["torch_version"] = std::string(SKELOPS_TORCH_VERSION);
    std::vector<std::string> backends{"cpu"};
#ifdef SKELOPS_WITH_CUDA
    backends.push_back("cuda");
    info["cuda_version"] = std::string(SKELOPS_CUDA_VERSION);
    info["cuda_archs"] = split_archs(SKELOPS_CUDA_ARCHS_STR);
#else
    info["cuda_version"] = pybind11::none();
    info["cuda_archs"] = std::vector<std::string>{};
#endif
    info["backends"] = backends;
#if defined(__clang__)
    info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    info["compiler"] = std::string("gcc ") + __VERSION__;
#endif
    return info;
  });
}
