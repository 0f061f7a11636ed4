# The library's sources, per layer: src/CMakeLists.txt builds them, tests/fuzz reuses the lists.
set(VIRTDISK_SOURCE_ROOT ${CMAKE_CURRENT_LIST_DIR})

# virtdisk_sources(<list> <folder> <files...>) appends <root>/<folder>/<file> to <list>.
macro(virtdisk_sources list folder)
  foreach(file ${ARGN})
    list(APPEND ${list} ${VIRTDISK_SOURCE_ROOT}/${folder}/${file})
  endforeach()
endmacro()

# base: Status, Guid and the small vocabulary every layer speaks
virtdisk_sources(VIRTDISK_BASE_SOURCES base bytes.cpp guid.cpp status.cpp unicode.cpp)
# platform: the OS behind one interface (files, I/O queues, sockets, processes, user files)
virtdisk_sources(VIRTDISK_PLATFORM_SOURCES platform file.cpp io_queue_threads.cpp memory_file.cpp
  random.cpp socket.cpp)
virtdisk_sources(VIRTDISK_PLATFORM_POSIX_SOURCES platform/posix file_posix.cpp io_queue_uring.cpp
  process_posix.cpp random_posix.cpp socket_posix.cpp user_files_posix.cpp volume_posix.cpp)
virtdisk_sources(VIRTDISK_PLATFORM_WIN32_SOURCES platform/win32 file_win32.cpp process_win32.cpp
  random_win32.cpp shared_mutex_win32.cpp socket_win32.cpp user_files_win32.cpp volume_win32.cpp)
# formats: the Image contract, the provider registry, VHD, VHDX, ISO
virtdisk_sources(VIRTDISK_FORMATS_SOURCES formats compaction.cpp image.cpp locator_path.cpp
  partition_table.cpp)
virtdisk_sources(VIRTDISK_FORMATS_SOURCES formats/registry builtin.cpp provider.cpp registry.cpp)
virtdisk_sources(VIRTDISK_FORMATS_SOURCES formats/vhd vhd_check.cpp vhd_compact.cpp vhd_create.cpp
  vhd_format.cpp vhd_image.cpp vhd_provider.cpp vhd_resize.cpp vhd_set_info.cpp)
virtdisk_sources(VIRTDISK_FORMATS_SOURCES formats/vhdx vhdx_bat.cpp vhdx_check.cpp
  vhdx_compact.cpp vhdx_create.cpp vhdx_format.cpp vhdx_image.cpp vhdx_log.cpp vhdx_metadata.cpp
  vhdx_metadata_ops.cpp vhdx_open.cpp vhdx_provider.cpp vhdx_resize.cpp)
virtdisk_sources(VIRTDISK_FORMATS_SOURCES formats/iso iso_provider.cpp iso_structures.cpp
  iso_volume.cpp)
# core: open disks and differencing chains, long operations (compact, merge, resize)
virtdisk_sources(VIRTDISK_CORE_SOURCES core compact.cpp disk_operation.cpp merge.cpp open_disk.cpp
  resize.cpp virtual_disk.cpp work_queue.cpp)
# mirror: the block-copy engine; attach: NBD exports, the attach host and its registry
virtdisk_sources(VIRTDISK_MIRROR_SOURCES mirror mirror_job.cpp)
virtdisk_sources(VIRTDISK_ATTACH_SOURCES attach attach_host.cpp attach_registry.cpp
  disk_export_target.cpp nbd_attachment.cpp nbd_server.cpp nbd_session.cpp security_descriptor.cpp
  tls_psk.cpp)
# api: the C exports over the layers; per OS the kernel32 subset (POSIX, with libvirtdisk.so's
# non-SDK extensions) or disk handles as kernel handles (Windows)
virtdisk_sources(VIRTDISK_API_SOURCES api attach.cpp compact.cpp disk_api_support.cpp
  disk_handle.cpp error_map.cpp exports.cpp guids.cpp handle_table.cpp information.cpp merge.cpp
  metadata.cpp mirror.cpp open_create.cpp operations.cpp overlapped.cpp resize.cpp
  storage_dependency.cpp strings.cpp trace.cpp)
virtdisk_sources(VIRTDISK_API_POSIX_SOURCES api extensions.cpp kernel32_posix.cpp)
virtdisk_sources(VIRTDISK_API_WIN32_SOURCES api kernel32_win32.cpp)
virtdisk_sources(VIRTDISK_API_WIN32_SOURCES api/win32 disk_pipe.cpp function_hooks.cpp
  kernel32_hooks.cpp thread_exit.cpp volume_handle.cpp)
