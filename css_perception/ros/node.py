"""The live segmentation node: LiDAR scans and camera frames in, labels, overlays, legend and diagnostics out.

Topics (relative names; the launch file remaps the inputs):

- in  ``points`` (PointCloud2), ``image`` (Image), or ``image/compressed`` (CompressedImage, jpeg/png) with
  ``image_transport:=compressed``, named after ``image``'s remapped name as image_transport names it: best effort,
  keep last 1, so a slow model drops stale frames instead of queueing them.
- out ``~/lidar/points``: the input cloud's fields + ``label`` (uint16 ontology id; 0 where the class probability
  is below ``min_score``) + ``rgb`` (packed float32, RViz's RGB8) + ``score`` (float32), with the input header.
  ``~/camera/labels`` (mono16/mono8 ids) and ``~/camera/overlay`` (rgb8), input header. ``~/legend`` (MarkerArray)
  and ``~/legend_json`` (latched String). ``~/provenance`` (String): one JSON per processed frame with its stamp,
  frame id and the model version that produced its outputs -- how each output says which model made it, without
  bending its header. ``/diagnostics``, statuses ``<node>: <modality>``: per modality rate, latency percentiles per
  stage, counters, model version, provider, and ``frames_missed``: frames the gaps between input stamps say never
  reached the node (WARN above ``missed_frames_warn_fraction`` of the recent ones).
- services ``~/reload_model`` (std_srvs/Trigger: re-validate the registry's CURRENT now) and ``~/model_info``.
- parameters (``css_perception.ros.params``): the live ones apply from the next frame or diagnostics period when
  set on the running node, checked as a whole first; the others are read-only after start.

Models come from an explicit path or from the registry's ``CURRENT``; in registry mode a watcher validates new
versions in its own thread and the swap is one reference assignment that frame callbacks read once per frame.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from css_perception.core.errors import CoreError
from css_perception.core.image import array_to_image, compressed_to_rgb8, image_to_array, to_rgb8
from css_perception.core.metadata import Modality
from css_perception.core.ontology import colour_lut, pack_rgb
from css_perception.core.pointcloud import array_to_cloud, cloud_to_array, with_fields, xyz_intensity
from css_perception.ros.messages import (
    cloud_message,
    diagnostic_status,
    image_message,
    legend_json,
    legend_markers,
    overlay,
)
from css_perception.ros.params import ConfigError, NodeConfig, declare_and_read
from css_perception.runtime.errors import RuntimeModelError
from css_perception.runtime.hotswap import RegistryWatcher, Segmenter, SwapDecision
from css_perception.runtime.model import SegmentationModel
from css_perception.runtime.registry import Registry
from css_perception.runtime.segmenter import make_segmenter, unsure_as_unlabelled
from css_perception.runtime.stats import LatencyWindow, RateMeter, StampGaps

__all__ = ['SegmentationNode', 'main']

STAGES = {
    Modality.LIDAR: ('decode', 'project', 'infer', 'back_project', 'publish', 'total'),
    Modality.CAMERA: ('decode', 'preprocess', 'infer', 'postprocess', 'publish', 'total'),
}


class Serving(NamedTuple):
    """What serves one modality; replaced as a whole, so a frame never mixes two models."""

    segmenter: Segmenter
    lut: np.ndarray


@dataclass
class ModalityState:
    modality: Modality
    serving: Serving | None = None
    latency: dict[str, LatencyWindow] = field(default_factory=dict)
    rate: RateMeter = field(default_factory=RateMeter)
    gaps: StampGaps = field(default_factory=StampGaps)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(('frames_in', 'frames_out', 'dropped', 'skipped', 'errors'), 0)
    )
    last_error: str = ''
    refused: tuple[str, str] = ('', '')
    canary: Any = None
    watcher: RegistryWatcher | None = None

    def __post_init__(self) -> None:
        self.latency = {stage: LatencyWindow() for stage in STAGES[self.modality]}


class SegmentationNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segment_node', **kwargs)
        self.states: dict[Modality, ModalityState] = {}  # before anything can fail: destroy_node reads it
        self.config: NodeConfig = declare_and_read(self)
        cfg = self.config
        self.registry = Registry(cfg.model_dir)
        reliable = cfg.output_reliability == 'reliable'
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        # Explicit depth 1: the stock SensorDataQoS keeps 5, which would queue stale scans behind a slow model.
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=reliability)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self._frame_id = 'base_link'
        self._legend_frame = ''
        self._legend_lock = threading.Lock()
        self.pub_legend = self.create_publisher(MarkerArray, '~/legend', latched)
        self.pub_legend_json = self.create_publisher(String, '~/legend_json', latched)
        self.pub_provenance = self.create_publisher(String, '~/provenance', out_qos)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        if cfg.enable_lidar:
            self.states[Modality.LIDAR] = ModalityState(Modality.LIDAR)
            self.pub_cloud = self.create_publisher(PointCloud2, '~/lidar/points', out_qos)
            self.create_subscription(
                PointCloud2, 'points', self._on_cloud, sensor_qos, callback_group=MutuallyExclusiveCallbackGroup()
            )
        if cfg.enable_camera:
            self.states[Modality.CAMERA] = ModalityState(Modality.CAMERA)
            self.pub_labels = self.create_publisher(Image, '~/camera/labels', out_qos)
            self.pub_overlay = self.create_publisher(Image, '~/camera/overlay', out_qos)
            msg_type, topic, callback = Image, 'image', self._on_raw_image
            if cfg.image_transport == 'compressed':  # image_transport's name: the remapped base topic + /compressed
                msg_type, topic, callback = (
                    CompressedImage,
                    f'{self.resolve_topic_name(topic)}/compressed',
                    self._on_compressed,
                )
            self.create_subscription(
                msg_type, topic, callback, sensor_qos, callback_group=MutuallyExclusiveCallbackGroup()
            )
            self.get_logger().info(f'camera frames: {msg_type.__name__} on {self.resolve_topic_name(topic)}')
        services = ReentrantCallbackGroup()
        self.create_service(Trigger, '~/reload_model', self._on_reload, callback_group=services)
        self.create_service(Trigger, '~/model_info', self._on_model_info, callback_group=services)
        self._service_group = services
        self._diagnostics_timer = self._diagnostics_every(cfg.diagnostics_period_s)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        for state in self.states.values():
            self._start_model(state)
        self._publish_legend()

    def _diagnostics_every(self, period_s: float) -> Timer:
        """A wall-clock (steady) timer: under use_sim_time a ROS-time timer stops while no bag plays /clock, and the
        node's health must be reported then too."""
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        return self.create_timer(period_s, self._publish_diagnostics, callback_group=self._service_group, clock=steady)

    # -- live parameters ----------------------------------------------------------------------------------------
    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Refuse values the node cannot run with; rclpy has already refused read-only names and wrong types."""
        try:
            self.config.changed({p.name: p.value for p in params})
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        self.config = self.config.changed({p.name: p.value for p in params})  # frames read it once per use
        if any(p.name == 'diagnostics_period_s' for p in params):
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self._diagnostics_every(self.config.diagnostics_period_s)
        self.get_logger().info('parameters set: ' + ', '.join(f'{p.name}={p.value!r}' for p in params))

    # -- models -------------------------------------------------------------------------------------------------
    def _start_model(self, state: ModalityState) -> None:
        explicit = self.config.lidar_model if state.modality is Modality.LIDAR else self.config.camera_model
        if explicit:
            try:
                model = SegmentationModel.load(
                    explicit, self.config.providers, tensorrt_cache=self.config.tensorrt_cache
                )
                if model.metadata.modality is not state.modality:
                    raise RuntimeModelError(f'{explicit} is a {model.metadata.modality.value} model')
                self._install(state, make_segmenter(model))
            except (RuntimeModelError, CoreError) as err:
                state.last_error = str(err)
                self.get_logger().error(f'{state.modality.value} model refused: {err}')
            return
        state.watcher = RegistryWatcher(
            self.registry,
            state.modality,
            self._on_decision,
            providers=self.config.providers,
            tensorrt_cache=self.config.tensorrt_cache,
            poll_s=self.config.registry_poll_s,
            canary=lambda: state.canary,
        )
        if state.watcher.check() is None and state.serving is None:
            self.get_logger().warning(
                f'no {state.modality.value} model in {self.registry.directory(state.modality)}; waiting for one'
            )
        if self.config.watch_registry:
            state.watcher.start()

    def _install(self, state: ModalityState, segmenter: Segmenter) -> None:
        state.serving = Serving(segmenter, colour_lut(segmenter.metadata.classes))  # the swap: one assignment
        meta = segmenter.metadata
        self.get_logger().info(
            f'{state.modality.value} model {meta.version} serving on {segmenter.model.provider}: '
            f'{len(meta.classes)} classes ({", ".join(c.name for c in meta.classes)})'
        )

    def _on_decision(self, decision: SwapDecision) -> None:
        state = self.states[decision.modality]
        if decision.accepted and decision.segmenter is not None:
            self._install(state, decision.segmenter)
            state.refused = ('', '')
            self._publish_legend()
        else:
            state.refused = (decision.version, decision.reason)
            self.get_logger().warning(
                f'{decision.modality.value} model {decision.version} refused, old model keeps serving: '
                f'{decision.reason}'
            )

    # -- frames -------------------------------------------------------------------------------------------------
    def _begin(self, state: ModalityState, header: Header, wanted: bool) -> Serving | None:
        state.counts['frames_in'] += 1
        state.rate.tick()
        state.gaps.add(header.stamp.sec * 10**9 + header.stamp.nanosec)
        serving = state.serving  # read once: this frame is processed wholly by this model
        if serving is None:
            state.counts['dropped'] += 1
        elif not wanted:
            state.counts['skipped'] += 1
            return None
        return serving

    def _bad_frame(self, state: ModalityState, err: Exception) -> None:
        state.counts['errors'] += 1
        state.last_error = str(err)
        self.get_logger().warning(f'{state.modality.value} frame skipped: {err}', throttle_duration_sec=5.0)

    def _finish(self, state: ModalityState, header: Header, serving: Serving, times: dict[str, float]) -> None:
        if self.pub_provenance.get_subscription_count():
            meta = serving.segmenter.metadata
            info = {
                'modality': state.modality.value,
                'stamp': {'sec': header.stamp.sec, 'nanosec': header.stamp.nanosec},
                'frame_id': header.frame_id,
                'model_version': meta.version,
                'provider': serving.segmenter.model.provider,
            }
            self.pub_provenance.publish(String(data=json.dumps(info)))
        for stage, seconds in times.items():
            state.latency[stage].add(seconds)
        state.counts['frames_out'] += 1

    def _on_cloud(self, msg: PointCloud2) -> None:
        state = self.states[Modality.LIDAR]
        t0 = time.perf_counter()
        serving = self._begin(state, msg.header, self.pub_cloud.get_subscription_count() > 0)
        if serving is None:
            return
        self._frame_id = msg.header.frame_id or self._frame_id
        try:
            arr = cloud_to_array(msg)
            xyz, intensity = xyz_intensity(arr)
            t1 = time.perf_counter()
            result = serving.segmenter.segment(xyz, intensity)
            t2 = time.perf_counter()
            labels = unsure_as_unlabelled(result.labels, result.scores, self.config.min_score)
            out = with_fields(arr, label=labels, rgb=pack_rgb(serving.lut[labels]), score=result.scores)
            self.pub_cloud.publish(cloud_message(array_to_cloud(out), msg.header))
        except (CoreError, RuntimeModelError) as err:
            self._bad_frame(state, err)
            return
        except Exception as err:
            self._bad_frame(state, RuntimeError(f'inference failed: {err}'))
            return
        state.canary = (xyz, intensity)
        t3 = time.perf_counter()
        times = {'decode': t1 - t0, **result.timings, 'publish': t3 - t2, 'total': t3 - t0}
        self._finish(state, msg.header, serving, times)

    def _on_raw_image(self, msg: Image) -> None:
        self._on_frame(msg.header, lambda: to_rgb8(image_to_array(msg), msg.encoding))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._on_frame(msg.header, lambda: compressed_to_rgb8(msg.format, msg.data))

    def _on_frame(self, header: Header, decode: Callable[[], np.ndarray]) -> None:
        """Segment one camera frame; ``decode`` runs inside the frame's error handling, so a bad frame is counted."""
        state = self.states[Modality.CAMERA]
        t0 = time.perf_counter()
        want_labels = self.pub_labels.get_subscription_count() > 0
        want_overlay = self.pub_overlay.get_subscription_count() > 0
        serving = self._begin(state, header, want_labels or want_overlay)
        if serving is None:
            return
        try:
            rgb = decode()
            t1 = time.perf_counter()
            result = serving.segmenter.segment(rgb)
            t2 = time.perf_counter()
            labels = unsure_as_unlabelled(result.labels, result.scores, self.config.min_score)
            if want_labels:
                encoding = self.config.label_image_encoding
                ids = labels if encoding == 'mono16' else np.minimum(labels, 255).astype(np.uint8)
                self.pub_labels.publish(image_message(array_to_image(ids, encoding), header))
            if want_overlay:
                blended = overlay(rgb, labels, serving.lut, self.config.overlay_alpha)
                self.pub_overlay.publish(image_message(array_to_image(blended, 'rgb8'), header))
        except (CoreError, RuntimeModelError) as err:
            self._bad_frame(state, err)
            return
        except Exception as err:
            self._bad_frame(state, RuntimeError(f'inference failed: {err}'))
            return
        state.canary = rgb
        t3 = time.perf_counter()
        times = {'decode': t1 - t0, **result.timings, 'publish': t3 - t2, 'total': t3 - t0}
        self._finish(state, header, serving, times)

    # -- legend, diagnostics, services --------------------------------------------------------------------------
    def _publish_legend(self) -> None:
        with self._legend_lock:
            served = {m.value: (s.serving.segmenter.metadata if s.serving else None) for m, s in self.states.items()}
            self.pub_legend_json.publish(String(data=legend_json(served)))
            markers = MarkerArray()
            self._legend_frame = self._frame_id
            header = Header(frame_id=self._frame_id, stamp=self.get_clock().now().to_msg())
            for modality, meta in served.items():
                if meta is not None:
                    markers.markers.extend(legend_markers(meta, header, f'css_legend_{modality}').markers)
            self.pub_legend.publish(markers)

    def _status(self, state: ModalityState) -> Any:
        warn_ms, error_ms = (
            (self.config.lidar_latency_warn_ms, self.config.lidar_latency_error_ms)
            if state.modality is Modality.LIDAR
            else (self.config.camera_latency_warn_ms, self.config.camera_latency_error_ms)
        )
        p95_ms = state.latency['total'].p95 * 1e3
        serving = state.serving
        values: dict[str, Any] = {'rate_hz': f'{state.rate.rate():.2f}'}
        for stage, window in state.latency.items():
            values[f'latency_{stage}_p50_ms'] = f'{window.p50 * 1e3:.2f}'
            values[f'latency_{stage}_p95_ms'] = f'{window.p95 * 1e3:.2f}'
        values.update(state.counts)
        # Frames the stamps say the sensor sent but the node never got (transport loss, or a busy node).
        values['frames_missed'] = state.gaps.missed
        values['input_period_ms'] = f'{state.gaps.period_s * 1e3:.1f}'
        meta = serving.segmenter.metadata if serving else None
        values.update(
            {
                'last_error': state.last_error,
                'model_version': meta.version if meta else '',
                'model_path': str(serving.segmenter.model.path) if serving else '',
                'provider': serving.segmenter.model.provider if serving else '',
                'refused_version': state.refused[0],
                'refused_reason': state.refused[1],
            }
        )
        if serving is None:
            level, message = 'WARN', 'no model loaded; frames are dropped'
        elif p95_ms > error_ms:
            level, message = 'ERROR', f'latency p95 {p95_ms:.1f} ms > {error_ms:g} ms'
        elif p95_ms > warn_ms:
            level, message = 'WARN', f'latency p95 {p95_ms:.1f} ms > {warn_ms:g} ms'
        elif (missed := state.gaps.recent_missed_fraction) > self.config.missed_frames_warn_fraction:
            level, message = 'WARN', f'{100 * missed:.0f} % of recent input frames missed before the node'
        elif state.refused[0]:
            level, message = 'WARN', f'model {state.refused[0]} refused: {state.refused[1]}'
        else:
            level, message = 'OK', f'model {meta.version} on {serving.segmenter.model.provider}'
        # Named as diagnostic_updater names statuses (node: task), so that a node per camera stays apart.
        name = f'{self.get_fully_qualified_name()}: {state.modality.value}'
        return diagnostic_status(name, level, message, values)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self._status(state) for state in self.states.values()]
        self.pub_diagnostics.publish(array)
        if self._frame_id != self._legend_frame:  # the legend follows the sensor's frame for RViz
            self._publish_legend()

    def _on_reload(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        lines, ok = [], True
        for state in self.states.values():
            if state.watcher is None:
                lines.append(f'{state.modality.value}: explicit model path, not reloadable from the registry')
                continue
            decision = state.watcher.check(force=True)
            if decision is None:
                lines.append(f'{state.modality.value}: nothing published in the registry')
                ok = False
            else:
                ok &= decision.accepted
                verdict = 'accepted' if decision.accepted else 'refused'
                lines.append(f'{state.modality.value}: {decision.version} {verdict}: {decision.reason}')
        response.success, response.message = ok, '\n'.join(lines)
        return response

    def _on_model_info(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        info = {}
        for modality, state in self.states.items():
            serving = state.serving
            if serving is None:
                info[modality.value] = None
                continue
            meta = serving.segmenter.metadata
            info[modality.value] = {
                'version': meta.version,
                'parent_version': meta.parent_version,
                'path': str(serving.segmenter.model.path),
                'provider': serving.segmenter.model.provider,
                'classes': [{'id': c.id, 'name': c.name} for c in meta.classes],
                'refused_version': state.refused[0] or None,
            }
        response.success, response.message = True, json.dumps(info)
        return response

    def destroy_node(self) -> None:
        for state in self.states.values():
            if state.watcher is not None:
                state.watcher.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    try:
        rclpy.init(args=args)
    except _rclpy.RCLError as err:  # rcl refuses a params file it cannot read or parse, and bad --ros-args
        print(f'segment_node: cannot start: {err}', file=sys.stderr)
        return 2
    try:
        node = SegmentationNode()
    except ConfigError as err:
        rclpy.logging.get_logger('segment_node').fatal(str(err))
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
