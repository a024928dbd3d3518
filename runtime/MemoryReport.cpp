//===- MemoryReport.cpp - what a plan keeps in device memory --------------===//

#include "trlc/MemoryReport.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <iterator>
#include <map>
#include <sstream>

namespace trlc {

namespace {
constexpr int kCount = int(MemCategory::Count);


std::string shapeText(const artifact::TensorDesc &t) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape.size(); ++i)
    s += (i ? "x" : "") + std::to_string(t.shape[i]);
  return s + "]";
}
} // namespace

std::string formatBytes(int64_t bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(buf, sizeof(buf), "%.2f %s", v, units[u]);
  return buf;
}

const char *categoryName(MemCategory c) {
  switch (c) {
  case MemCategory::Parameters: return "parameters";
  case MemCategory::Frozen: return "frozen parameters";
  case MemCategory::Gradients: return "gradients";
  case MemCategory::Optimizer: return "optimizer state";
  case MemCategory::ValueModel: return "value model state";
  case MemCategory::Inputs: return "batch inputs";
  case MemCategory::Activations: return "activations";
  case MemCategory::Workspace: return "workspace";
  case MemCategory::Communication: return "communication buffers";
  case MemCategory::Host: return "offloaded (host)";
  default: return "";
  }
}

int64_t MemoryReport::Point::total() const {
  int64_t t = 0;
  for (int c = 0; c < kCount; ++c)
    if (c != int(MemCategory::Host))
      t += bytes[c];
  return t;
}

MemoryReport memoryReport(const artifact::Plan &plan, int64_t scratch, int64_t worldSize) {
  MemoryReport r;
  r.arenaBytes = plan.arenaBytes;
  r.scratchBytes = scratch;
  r.hostBytes = plan.hostBytes;
  size_t n = plan.tensors.size();
  std::vector<MemCategory> cat(n, MemCategory::Activations);
  std::vector<std::string> what(n);
  std::vector<bool> persistent(n, false);
  for (const artifact::ParamDesc &p : plan.params) {
    auto mark = [&](int t, MemCategory c, const std::string &w) {
      if (t < 0)
        return;
      cat[t] = c;
      what[t] = w;
      persistent[t] = true;
    };
    // PPO's value model trains beside the policy under "value_model." names.
    bool value = p.name.rfind("value_model.", 0) == 0;
    auto own = [&](MemCategory c) { return value ? MemCategory::ValueModel : c; };
    mark(p.tensor, own(p.trainable ? MemCategory::Parameters : MemCategory::Frozen),
         "param " + p.name);
    mark(p.grad, own(MemCategory::Gradients), "grad " + p.name);
    mark(p.expAvg, own(MemCategory::Optimizer), "exp_avg " + p.name);
    mark(p.expAvgSq, own(MemCategory::Optimizer), "exp_avg_sq " + p.name);
  }
  for (size_t t = 0; t < n; ++t)
    if (plan.tensors[t].host)
      cat[t] = MemCategory::Host;
  for (auto &[name, prog] : plan.programs)
    for (const artifact::KernelCall &c : prog.calls)
      if (isCollective(c.kernel) || c.kernel == Kernel::PackFlat)
        for (int t : c.out)
          if (!persistent[t]) {
            cat[t] = MemCategory::Communication;
            what[t] = std::string(kernelName(c.kernel)) + " output" +
                      (c.attrs.contains("group") ? " (" + c.attrs["group"].get<std::string>() + ")"
                                                 : std::string());
          }
  for (auto &[name, prog] : plan.programs)
    for (auto &[in, t] : prog.inputs)
      if (!persistent[t]) {
        cat[t] = MemCategory::Inputs;
        what[t] = "input " + in;
      }
  std::vector<bool> used(n, false);
  for (auto &[name, prog] : plan.programs)
    for (const artifact::KernelCall &c : prog.calls) {
      for (int t : c.in)
        if (t >= 0)
          used[t] = true;
      for (size_t k = 0; k < c.out.size(); ++k) {
        int t = c.out[k];
        used[t] = true;
        if (what[t].empty())
          what[t] = std::string(kernelName(c.kernel)) + " output" + (c.out.size() > 1 ? " " + std::to_string(k) : "");
      }
    }
  for (size_t t = 0; t < n; ++t)
    if (what[t].empty())
      what[t] = "view";  // a reshape: shares its owner's bytes
  // Persistent state counts throughout. An activation is live from the
  // call that writes it (program inputs: from the start) to its last
  // reader (outputs: to the end). Views (reshapes) share their owner's
  // offset: tensors live at once at one offset are one buffer, since the
  // planner never overlaps two live buffers.
  std::map<int64_t, bool> stateOffsets;
  for (size_t t = 0; t < n; ++t)
    if (persistent[t] && !stateOffsets.count(plan.tensors[t].offset)) {
      stateOffsets[plan.tensors[t].offset] = true;
      r.categoryBytes[int(cat[t])] += plan.tensors[t].bytes();
    }
  r.categoryBytes[int(MemCategory::Workspace)] = scratch;

  // Every point starts from the persistent state and the workspace.
  MemoryReport::Point base;
  std::copy(std::begin(r.categoryBytes), std::end(r.categoryBytes), base.bytes);

  struct Span {
    std::vector<int64_t> first, last;
  };
  // Generation's cache and gathered model: live through it.
  std::vector<bool> kvCache(n, false);
  auto spans = [&](const artifact::Program &prog) {
    Span sp{std::vector<int64_t>(n, -1), std::vector<int64_t>(n, -1)};
    auto touch = [&](int t, int64_t i) {
      if (t >= 0 && plan.tensors[t].viewOf >= 0)
        t = plan.tensors[t].viewOf;  // a view keeps its owner alive
      if (t < 0 || persistent[t] || kvCache[t] ||
          (!plan.tensors[t].host && stateOffsets.count(plan.tensors[t].offset)))
        return;
      if (sp.first[t] < 0 || i < sp.first[t])
        sp.first[t] = i;
      sp.last[t] = std::max(sp.last[t], i);
    };
    for (auto &[in, t] : prog.inputs)
      touch(t, 0);
    for (auto &[out, t] : prog.outputs)
      touch(t, static_cast<int64_t>(prog.calls.size()) - 1);
    for (size_t i = 0; i < prog.calls.size(); ++i) {
      for (int t : prog.calls[i].out)
        touch(t, static_cast<int64_t>(i));
      for (int t : prog.calls[i].in)
        touch(t, static_cast<int64_t>(i));
    }
    return sp;
  };

  std::vector<std::pair<const artifact::Program *, Span>> progs;
  for (const char *progName : {"train_step", "optimizer_step"}) {
    auto it = plan.programs.find(progName);
    if (it == plan.programs.end())
      continue;
    const artifact::Program &prog = it->second;
    Span sp = spans(prog);
    size_t calls = prog.calls.size();
    std::vector<std::vector<int>> starts(calls), ends(calls);
    for (size_t t = 0; t < n; ++t)
      if (sp.first[t] >= 0) {
        starts[sp.first[t]].push_back(int(t));
        ends[sp.last[t]].push_back(int(t));
      }
    // offset -> (tensors live there, bytes counted, category)
    std::map<std::pair<bool, int64_t>, std::pair<int, int64_t>> buffers;
    std::array<int64_t, kCount> running{};
    for (size_t i = 0; i < calls; ++i) {
      for (int t : starts[i]) {
        auto &[count, bytes] = buffers[{plan.tensors[t].host, plan.tensors[t].offset}];
        if (count++ == 0) {
          bytes = plan.tensors[t].bytes();
          running[int(cat[t])] += bytes;
        }
      }
      MemoryReport::Point p = base;
      p.program = progName;
      p.kernel = kernelName(prog.calls[i].kernel);
      for (int t : prog.calls[i].out)
        if (plan.tensors[t].host)
          p.kernel = "offload";
      for (int t : prog.calls[i].in)
        if (t >= 0 && plan.tensors[t].host)
          p.kernel = "reload";
      for (int c = 0; c < kCount; ++c)
        p.bytes[c] += running[c];
      r.timeline.push_back(p);
      for (int t : ends[i]) {
        auto it2 = buffers.find({plan.tensors[t].host, plan.tensors[t].offset});
        if (--it2->second.first == 0) {
          running[int(cat[t])] -= it2->second.second;
          buffers.erase(it2);
        }
      }
    }
    progs.emplace_back(&prog, std::move(sp));
  }
  for (size_t i = 0; i < r.timeline.size(); ++i)
    if (r.timeline[i].total() > r.timeline[r.peakIndex].total())
      r.peakIndex = i;

  // The buffers live at the peak.
  if (!r.timeline.empty()) {
    size_t idx = r.peakIndex;
    size_t which = 0;
    while (which < progs.size() && idx >= progs[which].first->calls.size())
      idx -= progs[which++].first->calls.size();
    const Span &sp = progs[which].second;
    std::map<std::pair<bool, int64_t>, bool> seen;
    for (size_t t = 0; t < n; ++t) {
      bool isState = persistent[t] ||
                     (!plan.tensors[t].host && stateOffsets.count(plan.tensors[t].offset));
      bool live = isState ? persistent[t]
                          : sp.first[t] >= 0 && sp.first[t] <= int64_t(idx) && int64_t(idx) <= sp.last[t];
      std::pair<bool, int64_t> key{plan.tensors[t].host, plan.tensors[t].offset};
      if (!live || seen.count(key) || plan.tensors[t].viewOf >= 0)
        continue;
      seen[key] = true;
      r.liveAtPeak.push_back({int(t), what[t] + " " + shapeText(plan.tensors[t]), cat[t],
                              plan.tensors[t].bytes()});
    }
    std::stable_sort(r.liveAtPeak.begin(), r.liveAtPeak.end(),
                     [](const LiveTensor &a, const LiveTensor &b) { return a.bytes > b.bytes; });
  }

  // Generation: the cache (cache_write's operand, written in place) lives
  // through prefill and decode; each program's peak adds its activations.
  if (plan.programs.count("prefill") && plan.programs.count("decode")) {
    MemoryReport::Generation g;
    const artifact::Program &prefill = plan.programs.at("prefill");
    const artifact::Program &decode = plan.programs.at("decode");
    if (auto it = decode.inputs.find("attention_mask"); it != decode.inputs.end()) {
      g.rows = plan.tensors[it->second].shape[0];
      g.slots = plan.tensors[it->second].shape[1];
    }
    (void)prefill;
    std::map<int64_t, bool> cacheOffsets;
    for (const char *progName : {"prefill", "decode"})
      for (const artifact::KernelCall &c : plan.programs.at(progName).calls)
        if (c.kernel == Kernel::CacheWrite)
          for (int t : {c.in[0], c.out[0]}) {
            kvCache[t] = true;
            if (!cacheOffsets.count(plan.tensors[t].offset)) {
              cacheOffsets[plan.tensors[t].offset] = true;
              g.kvCacheBytes += plan.tensors[t].bytes();
            }
          }
    if (auto it = plan.programs.find("gather_model"); it != plan.programs.end()) {
      g.gatherModel = true;
      for (const artifact::KernelCall &c : it->second.calls)
        for (int t : c.out) {
          kvCache[t] = true;
          g.gatheredBytes += plan.tensors[t].bytes();
          if (c.kernel == Kernel::AllGather)
            g.commBytesPerGeneration += plan.tensors[t].bytes();
        }
      // The programs read it through views.
      for (size_t t = 0; t < n; ++t)
        if (plan.tensors[t].viewOf >= 0 && kvCache[plan.tensors[t].viewOf])
          kvCache[t] = true;
    }
    if (plan.run.grpo)
      g.maxNewTokens = plan.run.grpo->maxCompletionLength;
    int64_t state = 0;
    for (int c = 0; c < kCount; ++c)
      if (c != int(MemCategory::Host))
        state += r.categoryBytes[c];
    for (const char *progName : {"prefill", "decode"}) {
      const artifact::Program &prog = plan.programs.at(progName);
      Span sp = spans(prog);
      int64_t most = 0;
      for (size_t i = 0; i < prog.calls.size(); ++i) {
        std::map<int64_t, int64_t> live;  // offset -> bytes (views share)
        for (size_t t = 0; t < n; ++t)
          if (sp.first[t] >= 0 && sp.first[t] <= int64_t(i) && int64_t(i) <= sp.last[t] &&
              !plan.tensors[t].host)
            live[plan.tensors[t].offset] =
                std::max(live[plan.tensors[t].offset], plan.tensors[t].bytes());
        int64_t sum = 0;
        for (auto &[o, b] : live)
          sum += b;
        most = std::max(most, sum);
        if (prog.calls[i].kernel == Kernel::AllGather)
          for (int t : prog.calls[i].out)
            (std::string(progName) == "decode" ? g.commBytesPerToken
                                               : g.commBytesPerGeneration) +=
                plan.tensors[t].bytes();
      }
      g.peakBytes[progName] = state + g.kvCacheBytes + g.gatheredBytes + most;
    }
    r.generation = g;
  }

  // Data parallelism: model state per rank against one process, and what
  // the collectives move per optimizer step.
  r.worldSize = worldSize;
  r.precomputedReference = plan.programs.count("ref_logps") > 0;
  r.zeroStage = plan.zero.stage;
  r.modelStateBytes = r.categoryBytes[int(MemCategory::Parameters)] +
                      r.categoryBytes[int(MemCategory::Gradients)] +
                      r.categoryBytes[int(MemCategory::Optimizer)] +
                      r.categoryBytes[int(MemCategory::ValueModel)];
  r.unshardedModelStateBytes = r.modelStateBytes;
  for (const artifact::ZeroGroup &g : plan.zero.groups)  // param, grad, 2 moments (f32)
    r.unshardedModelStateBytes += 4 * 4 * (g.numel - g.shard);
  if (r.worldSize > 1) {
    int64_t accum = plan.run.gradientAccumulationSteps;
    for (const char *progName : {"train_step", "optimizer_step"}) {
      auto it = plan.programs.find(progName);
      if (it == plan.programs.end())
        continue;
      int64_t times = std::string(progName) == "train_step" ? accum : 1;
      for (const artifact::KernelCall &c : it->second.calls) {
        if (c.kernel == Kernel::AllGather || c.kernel == Kernel::AllReduce)
          r.commBytesPerStep[kernelName(c.kernel)] += times * plan.tensors[c.out[0]].bytes();
        else if (c.kernel == Kernel::ReduceScatter)
          r.commBytesPerStep[kernelName(c.kernel)] += times * plan.tensors[c.in[0]].bytes();
      }
    }
    if (plan.zero.groups.empty())  // stage 0: the runtime all-reduces every gradient
      for (const artifact::ParamDesc &p : plan.params)
        if (p.grad >= 0)
          r.commBytesPerStep["all_reduce"] += plan.tensors[p.grad].bytes();
  }
  return r;
}

nlohmann::json memoryReportJson(const MemoryReport &r) {
  nlohmann::json cats = nlohmann::json::object(), peakCats = nlohmann::json::object();
  const MemoryReport::Point *peak = r.timeline.empty() ? nullptr : &r.timeline[r.peakIndex];
  for (int c = 0; c < kCount; ++c) {
    cats[categoryName(MemCategory(c))] = r.categoryBytes[c];
    peakCats[categoryName(MemCategory(c))] = peak ? peak->bytes[c] : 0;
  }
  nlohmann::json live = nlohmann::json::array();
  for (const LiveTensor &t : r.liveAtPeak)
    live.push_back({{"tensor", t.tensor}, {"what", t.what},
                    {"category", categoryName(t.category)}, {"bytes", t.bytes}});
  nlohmann::json timeline = nlohmann::json::array();
  for (const MemoryReport::Point &p : r.timeline)
    timeline.push_back({{"program", p.program}, {"kernel", p.kernel}, {"bytes", p.total()}});
  return {{"arena_bytes", r.arenaBytes},
          {"workspace_bytes", r.scratchBytes},
          {"host_bytes", r.hostBytes},
          {"device_bytes", r.arenaBytes + r.scratchBytes},
          {"planned_bytes_by_category", cats},
          {"peak",
           {{"bytes", r.peakBytes()},
            {"program", peak ? peak->program : ""},
            {"call", r.peakIndex},
            {"kernel", peak ? peak->kernel : ""},
            {"by_category", peakCats},
            {"live_tensors", live}}},
          {"timeline", timeline},
          {"data_parallel",
           {{"world_size", r.worldSize},
            {"zero_stage", r.zeroStage},
            {"model_state_bytes_per_rank", r.modelStateBytes},
            {"model_state_bytes_one_process", r.unshardedModelStateBytes},
            {"communication_bytes_per_step", r.commBytesPerStep}}},
          {"precomputed_reference", r.precomputedReference},
          {"generation", r.generation ? nlohmann::json{{"rows", r.generation->rows},
                                                      {"slots", r.generation->slots},
                                                      {"kv_cache_bytes", r.generation->kvCacheBytes},
                                                      {"gather_model", r.generation->gatherModel},
                                                      {"gathered_model_bytes",
                                                       r.generation->gatheredBytes},
                                                      {"communication_bytes_per_generation",
                                                       r.generation->commBytesPerGeneration},
                                                      {"communication_bytes_per_token",
                                                       r.generation->commBytesPerToken},
                                                      {"max_new_tokens", r.generation->maxNewTokens},
                                                      {"peak_bytes", r.generation->peakBytes}}
                                      : nlohmann::json(nullptr)}};
}

std::string memoryReportText(const MemoryReport &r) {
  std::ostringstream out;
  char line[256];
  out << "device memory: " << formatBytes(r.arenaBytes + r.scratchBytes) << " ("
      << formatBytes(r.arenaBytes) << " arena + " << formatBytes(r.scratchBytes)
      << " kernel workspace)\n";
  if (r.timeline.empty())
    return out.str();
  const MemoryReport::Point &peak = r.timeline[r.peakIndex];
  size_t idx = r.peakIndex;
  for (size_t i = 0; i < r.peakIndex; ++i)
    if (r.timeline[i].program != peak.program)
      --idx;
  out << "peak live: " << formatBytes(peak.total()) << " at " << peak.program << " call "
      << idx << " (" << peak.kernel << ")\n";
  for (int c = 0; c < kCount; ++c) {
    if (!peak.bytes[c] && !r.categoryBytes[c])
      continue;
    std::snprintf(line, sizeof line, "  %-32s %12s at the peak\n", categoryName(MemCategory(c)),
                  formatBytes(peak.bytes[c]).c_str());
    out << line;
  }
  if (r.precomputedReference) {
    std::snprintf(line, sizeof line, "  %-32s %12s (reference log-probabilities precomputed)\n",
                  categoryName(MemCategory::Frozen), "0 B");
    out << line;
  }
  if (!r.hostBytes)
    out << "  offloaded (host)                          0 B (nothing offloaded)\n";
  if (r.worldSize <= 1)
    out << "  communication buffers                     0 B (one process)\n";
  if (r.worldSize > 1) {
    out << "data parallel: " << r.worldSize << " ranks, ZeRO stage " << r.zeroStage
        << "; every number here is per rank\n";
    std::snprintf(line, sizeof line,
                  "  model state (parameters, gradients, AdamW) %s per rank, %s on one process\n",
                  formatBytes(r.modelStateBytes).c_str(),
                  formatBytes(r.unshardedModelStateBytes).c_str());
    out << line;
    int64_t total = 0;
    for (auto &[k, b] : r.commBytesPerStep)
      total += b;
    out << "  communication per optimizer step: " << formatBytes(total);
    std::string sep = " (";
    for (auto &[k, b] : r.commBytesPerStep) {
      out << sep << k << " " << formatBytes(b);
      sep = ", ";
    }
    out << (r.commBytesPerStep.empty() ? "" : ")") << "\n";
  }
  if (r.hostBytes)
    out << "host pool for offloaded activations: " << formatBytes(r.hostBytes) << "\n";
  if (const auto &g = r.generation) {
    out << "generation: " << g->rows << " rows x " << g->slots << " positions, KV cache "
        << formatBytes(g->kvCacheBytes) << " (shares training's activation bytes); peak "
        << formatBytes(g->peakBytes.at("prefill")) << " in prefill, "
        << formatBytes(g->peakBytes.at("decode")) << " per decoding step";
    out << "\n";
    if (r.zeroStage == 3) {
      out << "  ZeRO-3, ds3_gather_for_generation = " << (g->gatherModel ? "true" : "false")
          << ": ";
      if (g->gatherModel)
        out << "the whole model (" << formatBytes(g->gatheredBytes)
            << ") gathered once per generation, nothing per decoding step";
      else
        out << "layer by layer: " << formatBytes(g->commBytesPerGeneration)
            << " gathered in prefill, " << formatBytes(g->commBytesPerToken)
            << " per decoding step";
      if (g->maxNewTokens > 0)
        out << "; " << formatBytes(g->commBytesPerGeneration +
                                   g->maxNewTokens * g->commBytesPerToken)
            << " per generation of " << g->maxNewTokens << " tokens";
      out << "\n";
    }
  }

  out << "largest tensors live at the peak:\n";
  for (size_t i = 0; i < r.liveAtPeak.size() && i < 10; ++i) {
    std::snprintf(line, sizeof line, "  %12s  %-14s %s\n", formatBytes(r.liveAtPeak[i].bytes).c_str(),
                  categoryName(r.liveAtPeak[i].category), r.liveAtPeak[i].what.c_str());
    out << line;
  }
  if (r.liveAtPeak.size() > 10)
    out << "  ... " << r.liveAtPeak.size() - 10 << " more\n";
  return out.str();
}

std::string memoryTimelineSvg(const MemoryReport &r, const std::string &title) {
  const int width = 960, height = 420, left = 80, right = 220, top = 40, bottom = 50;
  const int plotW = width - left - right, plotH = height - top - bottom;
  const char *colors[] = {"#4e79a7", "#9c755f", "#f28e2b", "#e15759",
                          "#76b7b2", "#59a14f", "#b07aa1", "#edc948"};
  int64_t maxBytes = 1;
  for (const MemoryReport::Point &p : r.timeline)
    maxBytes = std::max(maxBytes, p.total());
  size_t n = std::max<size_t>(r.timeline.size(), 1);
  auto x = [&](double i) { return left + plotW * i / double(n); };
  auto y = [&](double b) { return top + plotH - plotH * b / double(maxBytes); };
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<title>" << title << "</title>\n"
    << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << title
    << ": live device memory over one step (peak " << formatBytes(r.peakBytes()) << ")</text>\n";
  // Stacked areas, bottom category first.
  std::vector<double> base(r.timeline.size(), 0.0);
  for (int c = 0; c < kCount; ++c) {
    if (c == int(MemCategory::Host))
      continue;  // host memory: not stacked with the device's
    bool any = false;
    for (const MemoryReport::Point &p : r.timeline)
      any |= p.bytes[c] > 0;
    if (!any)
      continue;
    std::ostringstream pts;
    for (size_t i = 0; i < r.timeline.size(); ++i) {
      double top2 = base[i] + r.timeline[i].bytes[c];
      pts << x(i) << "," << y(top2) << " " << x(i + 1) << "," << y(top2) << " ";
    }
    for (size_t i = r.timeline.size(); i-- > 0;)
      pts << x(i + 1) << "," << y(base[i]) << " " << x(i) << "," << y(base[i]) << " ";
    for (size_t i = 0; i < r.timeline.size(); ++i)
      base[i] += r.timeline[i].bytes[c];
    s << "<polygon fill=\"" << colors[c] << "\" stroke=\"none\" points=\"" << pts.str()
      << "\"><title>" << categoryName(MemCategory(c)) << "</title></polygon>\n";
    int ly = top + 20 * c;
    s << "<rect x=\"" << width - right + 20 << "\" y=\"" << ly << "\" width=\"12\" height=\"12\" fill=\""
      << colors[c] << "\"/><text x=\"" << width - right + 38 << "\" y=\"" << ly + 11 << "\">"
      << categoryName(MemCategory(c)) << "</text>\n";
  }
  // Offloads (orange, down) and reloads (green, up) under the axis.
  for (size_t i = 0; i < r.timeline.size(); ++i) {
    bool off = r.timeline[i].kernel == "offload", re = r.timeline[i].kernel == "reload";
    if (!off && !re)
      continue;
    double cx = x(i + 0.5), by = top + plotH + 4;
    s << "<polygon fill=\"" << (off ? "#f28e2b" : "#59a14f") << "\" points=\"" << cx - 4 << ","
      << (off ? by : by + 8) << " " << cx + 4 << "," << (off ? by : by + 8) << " " << cx << ","
      << (off ? by + 8 : by) << "\"><title>" << (off ? "offload" : "reload") << "</title></polygon>\n";
  }
  if (r.hostBytes)
    s << "<text x=\"" << width - right + 20 << "\" y=\"" << top + 20 * kCount + 10
      << "\">host pool: " << formatBytes(r.hostBytes) << "</text>\n<text x=\"" << width - right + 20
      << "\" y=\"" << top + 20 * kCount + 28 << "\" fill=\"#f28e2b\">v offload</text><text x=\""
      << width - right + 100 << "\" y=\"" << top + 20 * kCount + 28
      << "\" fill=\"#59a14f\">^ reload</text>\n";
  // Program boundary and peak marker, axes.
  for (size_t i = 1; i < r.timeline.size(); ++i)
    if (r.timeline[i].program != r.timeline[i - 1].program)
      s << "<line x1=\"" << x(i) << "\" y1=\"" << top << "\" x2=\"" << x(i) << "\" y2=\""
        << top + plotH << "\" stroke=\"#333\" stroke-dasharray=\"4,3\"/><text x=\"" << x(i) + 4
        << "\" y=\"" << top + 12 << "\">" << r.timeline[i].program << "</text>\n";
  if (!r.timeline.empty())
    s << "<line x1=\"" << x(r.peakIndex + 0.5) << "\" y1=\"" << top << "\" x2=\""
      << x(r.peakIndex + 0.5) << "\" y2=\"" << top + plotH
      << "\" stroke=\"red\"/><text x=\"" << x(r.peakIndex + 0.5) + 4 << "\" y=\"" << top + 28
      << "\" fill=\"red\">peak: " << r.timeline[r.peakIndex].kernel << "</text>\n";
  s << "<line x1=\"" << left << "\" y1=\"" << top + plotH << "\" x2=\"" << left + plotW << "\" y2=\""
    << top + plotH << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\""
    << left << "\" y2=\"" << top + plotH << "\" stroke=\"black\"/>\n";
  for (int k = 0; k <= 4; ++k) {
    double b = maxBytes * k / 4.0;
    s << "<text x=\"" << left - 6 << "\" y=\"" << y(b) + 4 << "\" text-anchor=\"end\">"
      << formatBytes(static_cast<int64_t>(b)) << "</text>\n";
  }
  s << "<text x=\"" << left + plotW / 2 << "\" y=\"" << height - 15
    << "\" text-anchor=\"middle\">kernel call (train_step, then optimizer_step)</text>\n</svg>\n";
  return s.str();
}

} // namespace trlc
