#!/usr/bin/env python3
"""Compiles one GLSL compute shader variant to SPIR-V with glslc, then validates it with spirv-val.

usage: compile_shader.py GLSLC SPIRV_VAL TARGET_ENV INPUT OUTPUT DEPFILE [-DNAME=VALUE ...]
GLSLC may be a wrapper script (e.g. a newer glslc unpacked into a private prefix)."""
import subprocess, sys

glslc, spirv_val, target_env, src, out, dep = sys.argv[1:7]
defines = sys.argv[7:]
cmd = [glslc, '-fshader-stage=compute', f'--target-env={target_env}', '-O', '-MD', '-MF', dep,
       '-I', src.rsplit('/', 1)[0], src, '-o', out] + defines
r = subprocess.run(cmd)
if r.returncode != 0:
    sys.exit(r.returncode)
r = subprocess.run([spirv_val, f'--target-env', target_env, out])
sys.exit(r.returncode)
