#!/usr/bin/env python3
"""Tells which optional GLSL extensions a glslc can compile: prints one feature name a line.

usage: probe_glslc.py GLSLC"""
import os, subprocess, sys, tempfile

PROBES = {
    'coopmat': '''#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) buffer B { float16_t d[]; };
void main() { coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> m;
  coopMatLoad(m, d, 0, 16, gl_CooperativeMatrixLayoutRowMajor); coopMatStore(m, d, 0, 16, gl_CooperativeMatrixLayoutRowMajor); }
''',
    'int_dot': '''#version 450
#extension GL_EXT_integer_dot_product : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) buffer B { int d[]; };
void main() { d[0] = dotPacked4x8AccSatEXT(d[1], d[2], d[3]); }
''',
    'bfloat16': '''#version 450
#extension GL_EXT_bfloat16 : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) buffer B { bfloat16_t d[]; };
void main() { d[0] = d[1]; }
''',
}

glslc = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    for name, src in PROBES.items():
        p = os.path.join(tmp, name + '.comp')
        open(p, 'w').write(src)
        r = subprocess.run([glslc, '-fshader-stage=compute', '--target-env=vulkan1.3', p, '-o', p + '.spv'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            print(name)
