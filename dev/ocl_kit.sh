# Sourced by the GPU-run scripts: OCL, the CMake flags for the OpenCL backend.  With OCL_KIT
# (a folder of NVIDIA-usable OpenCL headers and libOpenCL.so / libclblast.so under include/
# and lib/) the backend builds against it and its lib/ joins LD_LIBRARY_PATH; without it
# the backend is off.
OCL=(-DPOLYATTN_OPENCL=OFF)
if [ -n "${OCL_KIT:-}" ]; then
  export LD_LIBRARY_PATH=$OCL_KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  OCL=(-DPOLYATTN_OPENCL=ON -DOpenCL_INCLUDE_DIR="$OCL_KIT/include"
       -DOpenCL_LIBRARY="$OCL_KIT/lib/libOpenCL.so" -DCLBlast_DIR=/nonexistent
       -DPOLYATTN_CLBLAST_LIBRARY="$OCL_KIT/lib/libclblast.so"
       -DPOLYATTN_CLBLAST_INCLUDE_DIR="$OCL_KIT/include")
fi
